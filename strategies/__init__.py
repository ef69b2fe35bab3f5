"""yolocc's built-in search strategies for the accuracy budget (``--search NAME``)."""

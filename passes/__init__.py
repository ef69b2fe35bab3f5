"""Built-in passes, one concept per module. ``builtin`` registers them through the public hooks."""

"""First-party integrations (frontends, emitters). They register through the same hooks as third parties."""

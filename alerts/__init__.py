"""Alert model, lifecycle and notifiers."""

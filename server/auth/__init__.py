"""Who may connect and subscribe (tokens), and how much (limits, origins)."""

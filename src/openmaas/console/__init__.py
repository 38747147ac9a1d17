"""The web console: sign-in sessions, the read models its pages need, and its static pages."""

"""The canonical, typed request and result every inbound dialect loads into and renders from.

``types`` declares them; ``chat`` is the one translation between them and the pipeline's
execution payload (the OpenAI chat shape the backends speak)."""

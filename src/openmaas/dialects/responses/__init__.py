"""The OpenAI Responses API with durable stored state: ``/v1/responses`` and its sub-resources."""

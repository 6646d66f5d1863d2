"""Functions agents call, each typed so its signature and docstring give the OpenAI tool schema.

Tool-using trajectories record calls and results in OpenAI tool-call message format; see
``agents.models.chat_format`` for how they are rendered for models without native tool support.
"""

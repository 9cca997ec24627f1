"""The OpenAI-compatible gateway (/v1/): requests in OpenAI's terms, each call reserved, made and charged by billing's services.

requests: the Chat Completions body validated (400 naming `param`); calls: one billed call (the hold
against the wallet, the key's limit and the caps; the provider; the charge); streaming: the
`chat.completion.chunk` stream; errors: every error in OpenAI's shape; views, urls, schema.
"""

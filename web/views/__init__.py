"""The user's own pages, one module per area: sign-in and sign-up, the wallet (and its spending cap), chats, files, API keys."""

"""Channel adapters: each converts one platform's messages to bot.messages types and delivers replies."""

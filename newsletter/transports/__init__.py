"""Transports hand one finished message to a provider for one recipient: outbox, SMTP, Amazon SES."""

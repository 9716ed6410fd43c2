"""Simulated providers (OpenAI, Anthropic) and vendors (Stripe, Twilio, Resend), in process,
for the demo and the tests; loaded only when the settings ask for a simulated upstream."""

"""Checkout, purchases, refunds and the Stripe event pipeline."""

"""What comes back after sending (bounces, complaints, deliveries, opens, clicks) and what it does to the store."""

"""Amazon SES: the send call, SNS-delivered events and their signatures, and the SQS event queue."""

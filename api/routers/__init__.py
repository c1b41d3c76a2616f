"""The service's routes, one router per concern: service (health, readiness, models),
transcription, attribution jobs, LUR reports and the web page."""

"""The path from the API to the engines: clients, retries, breakers, admission, fallbacks."""

"""The operations page at `/ui`: what an operator looks at, and the JSON behind it."""

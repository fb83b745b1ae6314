"""What a load balancer in front of several appliances needs: readiness, draining, load feedback."""

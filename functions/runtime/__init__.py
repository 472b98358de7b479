"""What every function shares: the CloudEvents HTTP adapter, the bus worker and problem details."""

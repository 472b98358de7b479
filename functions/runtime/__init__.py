"""What every function shares: the CloudEvents HTTP adapter and the bus worker."""

"""What every flow shares: the flow skeleton (a Dagster component per flow) and the registry through
which a flow folder contributes migrations, commands, receiver routes, doctor checks and sandbox settings."""

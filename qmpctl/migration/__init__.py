"""Drive one live migration over QMP: settings (capabilities + parameters)
applied to both sides, a policy that decides at each pass/status event, and
the driver that executes the policy's actions and samples statistics."""

"""The compact gateway config (`aigw validate`, `aigw render`): a few lines per backend,
route and policy, rendered to the Envoy bootstrap that Envoy and the processor both read."""

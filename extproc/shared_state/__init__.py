"""State shared by gateway replicas through Redis: cooldowns, rate-limit and token-budget
counters. Optional: without `gateway.sharedState`, every replica keeps its own."""

"""Content guards that inspect prompts and completions: regex/PII, webhooks, moderation."""

import os

# Presidio and tldextract must never reach for the network in tests.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

# Hypothesis profiles (ci by default): see tests/hypothesis_profiles.py.
import tests.hypothesis_profiles  # noqa: F401

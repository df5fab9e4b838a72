import os

# Presidio and tldextract must never reach for the network in tests.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

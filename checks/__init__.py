"""Check implementations. Shipped as `cvdoctor.checks`; every module here registers its checks on import."""

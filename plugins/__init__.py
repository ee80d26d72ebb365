"""peftkit's built-in plugins, installed as the ``peftkit_plugins`` package.

Each folder is one plugin, registered through the ``peftkit`` entry-point group in pyproject.toml,
exactly as a third-party plugin would be.
"""

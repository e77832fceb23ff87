"""Network allowlists: the rules (pure), the presets (read from package managers' own
configuration), and the host-side filtering proxy that is the sandbox's only way out.

Nothing here is imported unless a policy asks for ``network = "allowlist"``.
"""

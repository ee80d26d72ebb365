"""The plugin system: hook specs and the hookimpl marker, contracts (Method, Task, ModelSource), registry, RunState."""

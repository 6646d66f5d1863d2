"""Teacher-student schemes, one LangGraph graph per module; each registers a runner in agents.jobs."""

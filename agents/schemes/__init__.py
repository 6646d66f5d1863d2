"""Teacher-student schemes: one LangGraph graph per module, each registered in agents.jobs."""

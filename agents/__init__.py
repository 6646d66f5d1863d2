"""Agent-based LLM distillation: teacher-student schemes, trajectory store, PEFT students."""

__version__ = "0.1.0"

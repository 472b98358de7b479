"""Model backends behind small load()/predict() interfaces; local CPU or remote (KServe/OpenAI)."""

"""Policy knowledge base: admin-maintained entries and retrieval that answers with a cited source."""

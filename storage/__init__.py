"""Persistence shared by the domain packages: one declarative base, one engine factory."""

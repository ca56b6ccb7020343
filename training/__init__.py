"""Supervised fine-tuning of students on Skill-Mix data with TRL (installed as ``skillmix.training``)."""

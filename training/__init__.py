"""Fine-tuning of students on Skill-Mix data with TRL: SFT, DPO, GRPO (installed as ``skillmix.training``)."""

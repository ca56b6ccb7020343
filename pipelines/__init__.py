"""distilabel pipelines that synthesize and grade D_SKILL-MIX(k), installed as ``skillmix.pipelines``."""

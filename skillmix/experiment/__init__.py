"""skillmix.experiment: one experiment file, every stage of the paper's loop (``skillmix experiment run``).

``config`` declares the experiment; ``stages`` names the stages, their fingerprints and what is done
(``stages.json``); ``runner`` checks (``checks``), plans (``plan``) and runs them: the dataset, publish,
evaluations and comparison in this process (``steps``), each training in a process of its own (``launch``);
``report`` writes the tables and decides the findings.
"""

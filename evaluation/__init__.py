"""The Skill-Mix(k) evaluation of a student model (``skillmix eval``): the dataset pipeline with the student
in the teacher's seat, several generations per combination, no keep filter, and the papers' three metrics
on the training, held-out and all skills."""

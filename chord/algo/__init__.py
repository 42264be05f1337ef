"""Pure-torch CHORD maths: advantages, policy loss, SFT loss, mu schedule and their combination."""

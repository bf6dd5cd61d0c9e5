"""Fan-in: what a chord's callback does with its branches' envelopes.

Merge sections, tally votes, or make one more call (a synthesis, a judge)
fed the branch outputs. The chord callback task is a thin adapter over
:func:`workers.fanin.combine.fan_in`.
"""

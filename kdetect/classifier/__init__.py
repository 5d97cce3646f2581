"""The fixed-length classifier baseline: a CNN with one softmax per answer position.

It is the classic approach that the detector replaces, kept so the two can be compared on the
same data; it reads only answers of the one length it was built for.
"""

"""Evaluating encoders: features, kNN and RankMe, both probe protocols,
fine-tune and the from-scratch baseline, pretrained workdirs, results and
pictures. Imports the layers below it."""

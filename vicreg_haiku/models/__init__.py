"""The networks: encoders, the expander, Haiku transforms, precision, and
weights in and out of PyTorch. Imports only utils/."""

"""VICReg (Bardes, Ponce, LeCun, ICLR 2022) in JAX + Haiku."""

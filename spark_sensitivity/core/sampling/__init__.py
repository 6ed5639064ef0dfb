"""Row randomness, sensitivity scores and the draws: i.i.d. sensitivity draws, the strategies, target-matched and loss-aware draws, uniform and stratified reference subsets."""

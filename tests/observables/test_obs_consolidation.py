import numpy as np
import pytest

from shld.observables import REGIME_CUTS, consolidation_ratio, ensemble_consolidation_ratio, regime_label


def test_consolidation_ratio_values_and_labels():
    g = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    assert np.allclose(consolidation_ratio(g, 0.5), [25.0, 0.0, 2.0])      # |g|^2 / (D d), d = 2
    assert ensemble_consolidation_ratio(g, 0.5) == pytest.approx(9.0)
    assert list(regime_label([10.0, 9.99, 2.0, 1.99, 0.5, 0.49])) == [
        "deterministic", "transitional", "transitional", "critical", "critical", "diffusive"]
    assert regime_label(np.nan) == "undefined"
    assert [c for c, _ in REGIME_CUTS][:3] == [10.0, 2.0, 0.5]
    with pytest.raises(ValueError, match="`D`"):
        consolidation_ratio(g, 0.0)
    with pytest.raises(ValueError, match="`D`"):
        ensemble_consolidation_ratio(g, -1.0)

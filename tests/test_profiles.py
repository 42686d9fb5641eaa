"""Training profiles select resource settings; unknown names fail clearly."""
import pytest

from orchestration.profiles import PROFILES, profile_settings
from orchestration.resources import PolicyResource


def test_default_and_large_profiles(monkeypatch):
    monkeypatch.delenv("REGIMEFLOW_PROFILE", raising=False)
    assert PolicyResource(**profile_settings("policy")).total_steps == 1_000_000
    monkeypatch.setenv("REGIMEFLOW_PROFILE", "large")
    assert PolicyResource(**profile_settings("policy")).total_steps == PROFILES["large"]["policy"]["total_steps"]
    monkeypatch.setenv("REGIMEFLOW_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown REGIMEFLOW_PROFILE='huge'"):
        profile_settings("policy")

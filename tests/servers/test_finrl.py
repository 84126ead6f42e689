"""FinRL stock trading: bookkeeping exact against the price data, indicators
against pandas, turbulence liquidation, splits and seeding."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import gym_openenv  # noqa: F401  (registers openenv/* ids)
from gym_openenv.servers.finrl.models import FinRLAction
from gym_openenv.servers.finrl.server.environment import FinRLEnvironment
from gym_openenv.servers.finrl.server.market_data import DEFAULT_DATA_PATH

TICKERS = ["AAPL", "JPM", "XOM"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finrl_ppo.py"


def prices_from_csv(tickers):
    frame = pd.read_csv(DEFAULT_DATA_PATH, index_col="Date")
    return frame[tickers]


def act(*fractions):
    return FinRLAction(actions=np.array(fractions, dtype=np.float32))


@pytest.mark.parametrize("cost", [0.0, 0.001])
def test_buy_and_hold_matches_price_data(cost):
    env = FinRLEnvironment(tickers=TICKERS, buy_cost_pct=cost, sell_cost_pct=cost, hmax=1000, reward_scaling=1.0)
    first = env.reset(seed=3)
    prices = prices_from_csv(TICKERS)
    start = prices.index.get_loc(first.date)
    bought = np.array([1000, 500, 250])
    cash = 1_000_000.0 - sum(prices.iloc[start] * bought * (1 + cost))

    obs = env.step(act(1.0, 0.5, 0.25))
    rewards = [obs.reward]
    values = [obs.portfolio_value]
    while not obs.done:
        obs = env.step(act(0.0, 0.0, 0.0))
        rewards.append(obs.reward)
        values.append(obs.portfolio_value)

    assert obs.holdings == bought.tolist()
    assert obs.truncated and env.state.step_count == 252
    expected = cash + prices.iloc[start + 1 : start + 253].to_numpy() @ bought
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-9)
    assert sum(rewards) == pytest.approx(values[-1] - 1_000_000.0, abs=1e-8)
    assert obs.date == prices.index[start + 252]


def test_transaction_costs_are_charged_exactly():
    env = FinRLEnvironment(tickers=TICKERS, buy_cost_pct=0.002, sell_cost_pct=0.003, hmax=100, random_start=False)
    env.reset()
    prices = prices_from_csv(TICKERS).to_numpy()
    day = env.day
    obs = env.step(act(0.37, 0.0, 1.0))  # 37 AAPL, 100 XOM
    buy_value = 37 * prices[day, 0] + 100 * prices[day, 2]
    assert obs.cash == pytest.approx(1_000_000.0 - buy_value * 1.002, abs=1e-9)
    assert obs.total_cost == pytest.approx(buy_value * 0.002, abs=1e-9)

    obs = env.step(act(-0.2, 0.0, -1.0))  # sell 20 AAPL, 100 XOM
    sell_value = 20 * prices[day + 1, 0] + 100 * prices[day + 1, 2]
    assert obs.holdings == [17, 0, 0]
    assert obs.cash == pytest.approx(1_000_000.0 - buy_value * 1.002 + sell_value * 0.997, abs=1e-9)
    assert obs.total_cost == pytest.approx(buy_value * 0.002 + sell_value * 0.003, abs=1e-9)
    assert obs.total_trades == 4


def test_cannot_sell_what_is_not_held_or_buy_beyond_cash():
    env = FinRLEnvironment(tickers=["AAPL"], initial_amount=1000.0, hmax=1000, buy_cost_pct=0.0, random_start=False)
    env.reset()
    price = env.data.close[env.day, 0]
    obs = env.step(act(-1.0))
    assert obs.holdings == [0] and obs.cash == 1000.0 and obs.total_trades == 0
    obs = env.step(act(1.0))
    price = env.data.close[env.day - 1, 0]
    assert obs.holdings == [int(1000.0 // price)]
    assert 0 <= obs.cash < price


def test_observation_layout_is_cash_prices_holdings_indicators():
    env = FinRLEnvironment(tickers=TICKERS, indicators=["macd", "rsi_30"], random_start=False)
    obs = env.reset()
    env.step(act(0.1, 0.2, 0.3))
    obs = env.step(act(0.0, 0.0, 0.0))
    day = env.day
    expected = np.concatenate(
        [[obs.cash], env.data.close[day], obs.holdings, env.data.indicators[0, day], env.data.indicators[1, day]]
    ).astype(np.float32)
    np.testing.assert_array_equal(obs.state, expected)
    spaces = env.field_spaces()
    assert spaces["observation"]["state"].shape == (1 + 3 + 3 + 2 * 3,)
    assert spaces["action"]["actions"].shape == (3,)
    assert env.metadata().extra["features"][:2] == ["cash", "price:AAPL"]


def test_indicators_match_pandas():
    env = FinRLEnvironment(tickers=TICKERS)
    close = prices_from_csv(TICKERS)
    names = list(env.indicator_names)
    ind = dict(zip(names, env.data.indicators))
    ema = lambda span: close.ewm(span=span, adjust=False).mean()  # noqa: E731
    sma = lambda w: close.rolling(w, min_periods=1).mean()  # noqa: E731
    std20 = close.rolling(20, min_periods=1).std().fillna(0.0)
    change = close.diff().fillna(0.0)
    up = change.clip(lower=0).ewm(alpha=1 / 30, adjust=False).mean()
    down = (-change).clip(lower=0).ewm(alpha=1 / 30, adjust=False).mean()
    mad = close.rolling(30, min_periods=1).apply(lambda w: np.abs(w - w.mean()).mean(), raw=True)
    expected = {
        "macd": ema(12) - ema(26),
        "boll_ub": sma(20) + 2 * std20,
        "boll_lb": sma(20) - 2 * std20,
        "rsi_30": 100 * up / (up + down),
        "cci_30": (close - sma(30)) / (0.015 * mad),
        "dx_30": 100 * (up - down).abs() / (up + down),
        "close_30_sma": sma(30),
        "close_60_sma": sma(60),
    }
    assert sorted(expected) == sorted(names)
    for name, frame in expected.items():
        np.testing.assert_allclose(ind[name][100:], frame.to_numpy()[100:], rtol=1e-9, err_msg=name)


def test_turbulence_is_mahalanobis_distance_of_returns():
    env = FinRLEnvironment(tickers=TICKERS)
    returns = prices_from_csv(TICKERS).pct_change().to_numpy()
    day = 1000
    history = returns[day - 252 : day]
    deviation = returns[day] - history.mean(axis=0)
    expected = deviation @ np.linalg.inv(np.cov(history, rowvar=False)) @ deviation
    assert env.data.turbulence[day] == pytest.approx(expected, rel=1e-9)
    assert np.all(env.data.turbulence[:253] == 0.0)


def test_turbulence_threshold_liquidates_and_blocks_buys():
    probe = FinRLEnvironment(tickers=TICKERS)
    turbulent = int(np.argmax(probe.data.turbulence[probe.first_day : probe.last_day])) + probe.first_day
    threshold = float(probe.data.turbulence[turbulent])
    env = FinRLEnvironment(
        tickers=TICKERS, turbulence_threshold=threshold, episode_length=None, random_start=False
    )
    env.reset()
    env.day = turbulent - 1  # jump to the day before the most turbulent day
    obs = env.step(act(1.0, 1.0, 1.0))
    assert obs.holdings == [100, 100, 100]
    obs = env.step(act(1.0, 1.0, 1.0))
    assert obs.holdings == [0, 0, 0]
    prices = env.data.close[turbulent]
    assert obs.cash == pytest.approx(1e6 - 100 * env.data.close[turbulent - 1].sum() * 1.001 + 100 * prices.sum() * 0.999)


def test_splits_and_seeded_starts():
    train = FinRLEnvironment(tickers=TICKERS, split="train")
    test = FinRLEnvironment(tickers=TICKERS, split="test", episode_length=100)
    train_starts = {train.reset(seed=s).date for s in range(20)}
    assert all("2010-01-01" <= d < "2021-01-01" for d in train_starts) and len(train_starts) > 10
    assert train.reset(seed=7).date == train.reset(seed=7).date
    obs = test.reset(seed=1)
    assert obs.date >= "2021-01-01"
    while not obs.done:
        obs = test.step(act(0.0, 0.0, 0.0))
        assert obs.date < "2023-01-01"
    whole = FinRLEnvironment(tickers=TICKERS, split="test", episode_length=None)
    assert whole.reset(seed=5).date == "2021-01-04"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"split": "validation"}, "split"),
        ({"tickers": ["NOPE"]}, "tickers"),
        ({"indicators": ["vwap"]}, "indicators"),
        ({"episode_length": 10_000}, "split"),
        ({"buy_cost_pct": 1.5}, "buy_cost_pct"),
    ],
)
def test_bad_configuration_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FinRLEnvironment(**kwargs)


def test_bad_action_names_the_field():
    env = FinRLEnvironment(tickers=TICKERS)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        env.step(act(0.5, 0.5))
    with pytest.raises(ValueError, match="actions"):
        env.step(act(2.0, 0.0, 0.0))


def test_gym_make_through_a_server_process_matches_in_process():
    kwargs = {"tickers": TICKERS, "episode_length": 20, "turbulence_threshold": 30.0}
    env = gym.make("openenv/finrl-v0", **kwargs)
    local = FinRLEnvironment(**kwargs)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        obs, info = env.reset(seed=11)
        expected = local.reset(seed=11)
        assert env.observation_space.shape == (1 + 2 * 3 + 8 * 3,) and env.action_space.shape == (3,)
        np.testing.assert_array_equal(obs, expected.state)
        rng = np.random.default_rng(0)
        terminated = truncated = False
        while not (terminated or truncated):
            action = rng.uniform(-1, 1, 3).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            expected = local.step(FinRLAction(actions=action))
            np.testing.assert_array_equal(obs, expected.state)
            assert (reward, info["portfolio_value"], info["holdings"]) == (
                expected.reward, expected.portfolio_value, expected.holdings
            )
        assert truncated and terminated is False and local.state.step_count == 20
    finally:
        env.close()


def test_ppo_example_runs():
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--total-timesteps", "256", "--n-steps", "64", "--tickers", "AAPL", "KO"],
        capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    assert "trained 256 steps" in out.stdout and "buy and hold" in out.stdout

"""The alerts consumer's job done the usual way in Python, the baseline `tickwatch bench
drain --python …` measures the alerts role against on the same backlog: aio-pika,
consume, json.loads, look up the symbol's rules in a dict, evaluate, publish each firing's
notification with publisher confirms, ack. Nothing is written to a database.

    python alerts_baseline.py --amqp URL --queue Q --exchange X --rules rules.json --messages N

rules.json: {"<venue>:<symbol>": [[rule_id, chat_id, "crossing_up", "101"], ...], ...}
Prints one JSON line: messages, seconds (first delivery to last ack), per_second, fired.
"""

import argparse
import asyncio
import json
import time
import uuid

import aio_pika


def crossed(condition, threshold, previous, price):
    if condition == "crossing_up":
        return previous is not None and previous < threshold <= price
    if condition == "crossing_down":
        return previous is not None and previous > threshold >= price
    if condition == "above":
        return price > threshold
    if condition == "below":
        return price < threshold
    return False


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--messages", type=int, required=True)
    args = parser.parse_args()

    with open(args.rules) as f:
        rules = {
            key: [(rule_id, chat_id, condition, float(threshold)) for rule_id, chat_id, condition, threshold in items]
            for key, items in json.load(f).items()
        }
    last_price = {}

    connection = await aio_pika.connect_robust(args.amqp)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=256)
    queue = await channel.get_queue(args.queue, ensure=False)
    exchange = await channel.get_exchange(args.exchange, ensure=False)

    done, fired, started = 0, 0, None
    async with queue.iterator() as messages:
        async for message in messages:
            if started is None:
                started = time.perf_counter()
            tick = json.loads(message.body)
            key = f"{tick['venue']}:{tick['symbol']}"
            price = float(tick["price"])
            previous = last_price.get(key)
            last_price[key] = price
            for rule_id, chat_id, condition, threshold in rules.get(key, ()):
                if crossed(condition, threshold, previous, price):
                    fired += 1
                    notification = {
                        "id": str(uuid.uuid4()),
                        "channel": "telegram",
                        "chat_id": chat_id,
                        "text": f"{tick['symbol']} crossed {threshold} at {tick['price']}",
                        "dedupe_key": f"alert:{rule_id}:{tick['ts']}",
                        "kind": "alert",
                        "origin_ts": tick["ts"],
                    }
                    await exchange.publish(
                        aio_pika.Message(
                            json.dumps(notification).encode(),
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            type="notification",
                        ),
                        routing_key="telegram",
                    )
            await message.ack()
            done += 1
            if done >= args.messages:
                break
    seconds = time.perf_counter() - started
    await connection.close()
    print(json.dumps({"messages": done, "seconds": seconds, "per_second": done / seconds, "fired": fired}))


if __name__ == "__main__":
    asyncio.run(main())

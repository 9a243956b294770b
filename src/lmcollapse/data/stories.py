"""The built-in story world: a seeded generator of simple TinyStories-style English stories.

Offline, on a laptop, this is D0. Stories have named characters, places, objects and feelings, a
small plot (a lost toy, a wish, sharing, a new friend, a trip) with a beginning and an end, past
tense narration and dialogue now and then; 80-250 words each.

Names, animals, objects, places and adjectives are drawn with Zipf weights (weight ∝ 1/rank), so
the vocabulary has a long tail whose loss over generations can be measured.

Every lowercase " there" is written by `_there`, which picks what follows it from THERE_NEXT;
openers and story bodies use different mixes, chosen so that over the whole corpus
p(" was" | " there") ≈ 0.76 and p(" were" | " there") ≈ 0.05 — the paper's TinyStories values
(Sec. 3.2), so the default probe is meaningful.

Story i depends only on (seed, i): `story(seed, i)`; `generate(n, seed)` yields stories 0..n-1.

    python -c "from lmcollapse.data.stories import story; print(story(0, 0))"
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator, Sequence

MIN_WORDS, MAX_WORDS = 80, 250

GIRLS = (
    "Lily Mia Sue Lucy Amy Sara Emma Anna Jane Kate Ella Zoe Rose Daisy Molly Ruby Grace Chloe "
    "Sophie Hannah Ivy Lola Nora Pam Tina Wendy Bella Clara Fiona Gina Holly Iris Julia Kira Luna "
    "Maya Nina Olive Polly Rita Stella Tess Uma Vera Willa Hazel Poppy Mabel Edith Flora"
).split()
BOYS = (
    "Tim Ben Max Sam Tom Jack Leo Jake Bob Dan Joe Finn Owen Luke Noah Eli Ryan Adam Carl Dave "
    "Eric Fred Gus Hank Ivan Jim Kyle Liam Matt Ned Oscar Pete Rex Seth Ted Vic Walt Zack Ollie "
    "Billy Danny Henry Jasper Milo Otis Rufus Toby Arlo Basil"
).split()
ANIMALS = (
    "dog cat bird bunny frog duck bear fox mouse owl fish pig cow horse lion monkey puppy kitten "
    "turtle squirrel deer sheep goat chicken elephant giraffe zebra tiger butterfly bee snail "
    "whale dolphin penguin seal crab ladybug hedgehog raccoon beaver moose parrot dragon koala "
    "panda otter badger"
).split()
OBJECTS = (
    "ball toy kite doll car truck book hat box cup ribbon balloon block crayon drum train boat "
    "bike blanket pillow shoe sock bag basket bucket shell stone stick leaf flower apple cookie "
    "cake pie sandwich banana carrot jar key lamp mirror necklace ring coin map letter picture "
    "puzzle robot rope sled swing tent whistle umbrella wagon wand crown feather flag gift jacket "
    "ladder marble net pencil plate pot scarf seed star sticker button bell broom brush candle "
    "clock comb fan glove helmet kettle lantern mitten paddle rocket saddle shovel spinner "
    "teapot trumpet violin yoyo compass magnet pebble acorn"
).split()
PLACES = (
    "park garden forest beach house school farm lake river hill town yard zoo store kitchen "
    "playground meadow pond cave castle field library bakery market jungle mountain island "
    "village street barn shop backyard treehouse museum circus station harbor valley orchard "
    "attic"
).split()
ADJECTIVES = (
    "little big happy small kind brave red blue shiny soft old new pretty funny tiny bright green "
    "yellow pink purple orange fluffy friendly curious gentle silly quiet loud fast slow warm "
    "round tall smart sweet strong clever colorful sparkly bumpy smooth sleepy busy proud shy "
    "lucky wise grumpy cheerful fancy golden muddy noisy polite rare special spotty striped wild "
    "wooden velvet"
).split()
FEELINGS = (
    "happy sad excited scared angry proud surprised tired worried curious lonely grateful calm "
    "nervous upset glad bored joyful confused hopeful jealous relieved sorry"
).split()
PLAYS = (
    "play tag|build a sandcastle|fly a kite|paint pictures|read books|play hide and seek|"
    "sing songs|jump in puddles|pick flowers|look for bugs|bake cookies|ride bikes|dance|"
    "splash in the water|watch the clouds|climb trees|collect leaves|play with blocks"
).split("|")
WEATHER = (
    "The sun was shining.|The sky was blue and clear.|A soft wind was blowing.|It was a warm day.|"
    "The birds were singing.|It was a cold morning.|Big white clouds floated by.|"
    "The grass was wet with rain."
).split("|")
TREATS = (
    "cookies|cupcakes|apples|candies|sandwiches|pies|cups of milk|bowls of soup|berries|muffins"
).split("|")
PERSON_ADJECTIVES = (
    "little happy kind brave small funny shy smart sweet curious gentle silly quiet clever "
    "cheerful polite proud lucky grumpy sleepy busy strong wise tall"
).split()

# What follows " there". Openers: "Once upon a time, there ...". Bodies: any other " there".
# Expected per story: 0.85 opener slots and 1.0 body slots, so over the corpus
# p(was) = (0.85·0.92 + 1.0·0.63)/1.85 ≈ 0.763 and p(were) = (0.85·0.03 + 1.0·0.0675)/1.85 ≈ 0.050.
OPENER_THERE_P = 0.85
OPENER_NEXT = {"was": 0.92, "were": 0.03, "lived": 0.05}
BODY_NEXT = {
    "was": 0.63,
    "were": 0.0675,
    "is": 0.06,
    "are": 0.03,
    ".": 0.07,
    "and": 0.04,
    "too": 0.03,
    "every": 0.0325,
    "lived": 0.04,
}
BODY_THERE_SLOTS = (0, 1, 1, 2)  # uniform: mean 1.0 per story


def _zipf(words: Sequence[str]) -> tuple[Sequence[str], list[float]]:
    return words, list(itertools.accumulate(1.0 / (r + 1) for r in range(len(words))))


_TABLES = {
    name: _zipf(words)
    for name, words in {
        "girl": GIRLS,
        "boy": BOYS,
        "animal": ANIMALS,
        "object": OBJECTS,
        "place": PLACES,
        "adj": ADJECTIVES,
        "person_adj": PERSON_ADJECTIVES,
        "feeling": FEELINGS,
        "play": PLAYS,
        "treat": TREATS,
    }.items()
}


class _Teller:
    """One story's random choices and cast."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.hero_is_girl = rng.random() < 0.5
        self.hero = self.pick("girl" if self.hero_is_girl else "boy")
        self.friend = self.pick("boy" if self.hero_is_girl else "girl")
        self.he, self.him, self.his = (
            ("she", "her", "her") if self.hero_is_girl else ("he", "him", "his")
        )
        self.animal = self.pick("animal")
        self.thing = self.pick("object")
        self.place = self.pick("place")

    def pick(self, table: str) -> str:
        words, cum = _TABLES[table]
        return words[bisect.bisect(cum, self.rng.random() * cum[-1])]

    def choice(self, options: Sequence[str]) -> str:
        return options[self.rng.randrange(len(options))]

    def a(self, word: str) -> str:
        return ("an " if word[0] in "aeiou" else "a ") + word

    def weighted(self, table: dict[str, float]) -> str:
        return self.rng.choices(list(table), weights=list(table.values()))[0]

    # Every lowercase " there" in the world comes from here.
    def there(self, nxt: str) -> str:
        adj, animal, thing, place = (
            self.pick("adj"),
            self.pick("animal"),
            self.pick("object"),
            self.place,
        )
        if nxt == "was":
            return self.choice(
                [
                    f"One day, there was {self.a(adj)} {thing} in the {place}.",
                    f"Near the {place}, there was {self.a(adj)} {animal}.",
                    f"Inside the box, there was {self.a(adj)} {thing}.",
                    "Then there was a loud noise.",
                    f"Next to the tree, there was a small {animal}.",
                ]
            )
        if nxt == "were":
            return self.choice(
                [
                    f"In the {place}, there were many {animal}s.",
                    f"On the table, there were {self.pick('treat')} for everyone.",
                    f"Soon there were lots of {adj} {thing}s.",
                ]
            )
        if nxt == "lived":
            return f"In the {place}, there lived {self.a(adj)} {animal}."
        if nxt == "is":
            return f'"Look, there is {self.a(adj)} {thing}!" said {self.hero}.'
        if nxt == "are":
            return f'"Look, there are so many {animal}s!" said {self.friend}.'
        if nxt == ".":
            return self.choice(
                [
                    f"{self.hero} wanted to go there.",
                    "They liked to play there.",
                    f"The {animal} was sitting there.",
                ]
            )
        if nxt == "and":
            return f"{self.hero} ran there and looked around."
        if nxt == "too":
            return f"{self.friend} was there too."
        return f"{self.hero} went there every day."  # "every"

    def opener(self) -> list[str]:
        kind = self.hero_kind()
        if self.rng.random() < OPENER_THERE_P:
            nxt = self.weighted(OPENER_NEXT)
            if nxt == "were":
                return [f"Once upon a time, there were two friends, {self.hero} and {self.friend}."]
            verb = "lived" if nxt == "lived" else "was"
            return [
                f"Once upon a time, there {verb} {self.a(self.pick('person_adj'))} {kind} named {self.hero}."
            ]
        return [
            self.choice(
                [
                    f"{self.hero} was {self.a(self.pick('person_adj'))} {kind} who lived near the {self.place}.",
                    f"One day, {self.hero} went to the {self.place} with {self.his} mom.",
                    f"Once upon a time, {self.a(self.pick('person_adj'))} {kind} named {self.hero} had a {self.thing}.",
                ]
            )
        ]

    def hero_kind(self) -> str:
        return self.choice(["girl", "little girl"] if self.hero_is_girl else ["boy", "little boy"])

    def filler(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return self.choice(WEATHER)
        if r < 0.7:
            return f"{self.hero} felt {self.pick('feeling')}."
        return f"{self.hero} and {self.friend} liked to {self.pick('play')} in the {self.place}."

    # Plots: lists of sentences, past tense, some dialogue.
    def lost(self) -> list[str]:
        t, p2 = self.thing, self.pick("place")
        return [
            f"{self.hero} had {self.a(self.pick('adj'))} {t}. {self.he.capitalize()} loved it very much.",
            f"One morning, {self.hero} took the {t} to the {p2}.",
            f"{self.he.capitalize()} played with it all day. When it was time to go home, the {t} was gone!",
            f"{self.hero} felt {self.choice(['sad', 'worried', 'upset'])}. "
            f'"Where is my {t}?" {self.he} cried.',
            f"{self.friend} came to help. They looked under the bushes and behind the {self.pick('object')}.",
            f"At last, {self.friend} saw something {self.pick('adj')} near a {self.pick('object')}. "
            f"It was the {t}!",
            f'"Thank you, {self.friend}!" said {self.hero}. {self.he.capitalize()} gave {self.friend} a big hug.',
            f"From that day on, {self.hero} kept the {t} safe.",
        ]

    def wish(self) -> list[str]:
        goal = self.choice(
            [
                "climb the big hill",
                f"fly {self.a(self.pick('adj'))} kite",
                "swim in the lake",
                "ride a bike",
                "bake a cake",
            ]
        )
        return [
            f"{self.hero} wanted to {goal}. {self.he.capitalize()} tried and tried, but it was very hard.",
            f"{self.he.capitalize()} fell down and felt {self.choice(['sad', 'tired', 'angry'])}.",
            f'"I can not do it," {self.he} said.',
            f'{self.friend} smiled. "Do not give up. We can try together," {self.friend} said.',
            f"They practiced every day. {self.hero} was {self.pick('adj')} and kept trying.",
            f"One day, {self.hero} did it! {self.he.capitalize()} was so {self.choice(['proud', 'happy', 'excited'])}.",
            f"{self.hero} learned that trying again is important.",
        ]

    def share(self) -> list[str]:
        t = self.thing
        return [
            f"{self.hero} had a new {t}. It was {self.pick('adj')} and {self.pick('adj')}.",
            f'{self.friend} saw it and asked, "Can I play with your {t}?"',
            f'"No, it is mine!" said {self.hero}. {self.friend} felt {self.choice(["sad", "upset", "lonely"])} '
            f"and walked away.",
            f"Later, {self.hero} played alone, but it was not fun.",
            f"{self.hero} thought about {self.friend}. {self.he.capitalize()} went to find {self.friend}.",
            f'"I am sorry. Do you want to play with my {t}?" {self.he} asked.',
            f"{self.friend} smiled and said yes. They played together and had lots of fun.",
            f"{self.hero} learned that sharing makes everyone happy.",
        ]

    def friend_animal(self) -> list[str]:
        an = self.animal
        return [
            f"One day, {self.hero} saw {self.a(an)} in the {self.place}. The {an} looked {self.pick('feeling')}.",
            f'"What is wrong?" asked {self.hero}.',
            f'"I am lost and I can not find my home," said the {an}.',
            f'{self.hero} wanted to help. "Do not worry. I will help you," {self.he} said.',
            f"They walked past the {self.pick('place')} and the {self.pick('object')}.",
            f"Soon they found the home of the {an}. Its family was very {self.choice(['happy', 'glad', 'relieved'])}.",
            f"The {an} thanked {self.hero}. From then on, they were best friends.",
        ]

    def trip(self) -> list[str]:
        p2 = self.pick("place")
        return [
            f"One sunny day, {self.hero} and {self.his} dad went to the {p2}.",
            f"{self.hero} saw {self.a(self.pick('adj'))} {self.pick('animal')} and "
            f"{self.a(self.pick('adj'))} {self.pick('object')}.",
            f'"Wow!" said {self.hero}. "Everything is so {self.pick("adj")}!"',
            f"Then the sky got dark and it started to rain. {self.hero} felt {self.choice(['scared', 'cold', 'nervous'])}.",
            f"Dad held {self.his} hand and they ran to a {self.pick('object')} shop to stay dry.",
            "When the rain stopped, they saw a big rainbow.",
            f"{self.hero} smiled. It was the best day ever.",
        ]

    PLOTS = ("lost", "wish", "share", "friend_animal", "trip")


def story(seed: int, index: int) -> str:
    """Story `index` of the world with this seed (80-250 words, deterministic)."""
    rng = random.Random(f"lmcollapse-story-world:{seed}:{index}")
    t = _Teller(rng)
    body = getattr(t, t.choice(_Teller.PLOTS))()
    # Extra sentences (fillers and body " there" slots) go between plot steps, never first.
    extras = [t.there(t.weighted(BODY_NEXT)) for _ in range(t.choice(BODY_THERE_SLOTS))]
    extras += [t.filler() for _ in range(rng.randint(1, 6))]
    for sentence in extras:
        body.insert(rng.randint(1, len(body) - 1), sentence)
    sentences = t.opener() + body
    words = sum(len(s.split()) for s in sentences)
    while words < MIN_WORDS:
        extra = t.filler()
        sentences.insert(rng.randint(1, len(sentences) - 1), extra)
        words += len(extra.split())
    return " ".join(sentences)


def generate(n: int, seed: int = 0, start: int = 0) -> Iterator[str]:
    """Stories start..start+n-1 of the world with this seed."""
    for i in range(start, start + n):
        yield story(seed, i)

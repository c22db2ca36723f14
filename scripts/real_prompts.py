"""Everyday prompts written for steer's real-model corpus (``scripts/make_real_corpus.py``): questions
a user might ask a small chat model, across science, health, food, money, travel, work, technology,
history, nature, language and home life. ``HELD_OUT`` is never trained on (the steering sweep)."""

TRAIN = [
    # science
    "Why is the sky blue?", "How do plants make their food?", "What causes the seasons on Earth?",
    "How does a rainbow form?", "Why do we have tides?", "What is gravity?", "How do magnets work?",
    "What is an atom made of?", "Why does ice float on water?", "How do volcanoes erupt?",
    "What causes earthquakes?", "How does the heart pump blood?", "Why do we need sleep?",
    "What is DNA?", "How do vaccines protect us?", "What is a black hole?", "How far away is the Moon?",
    "Why do stars twinkle?", "What is photosynthesis?", "How does sound travel?",
    "What is electricity?", "How do clouds form?", "Why is the ocean salty?", "What is evolution?",
    "How do bees make honey?", "Why do leaves change color in autumn?", "What is the water cycle?",
    "How does a battery store energy?", "What is climate change?", "How do birds fly?",
    # health and body
    "How can I improve my sleep?", "What are the benefits of drinking water?", "How much exercise do adults need?",
    "Why is breakfast important?", "How can I reduce stress?", "What are good sources of protein?",
    "How do I treat a small burn?", "Why should I wash my hands?", "What does a healthy diet look like?",
    "How can I keep my back healthy at a desk job?", "Why is stretching useful?", "What is a calorie?",
    "How does caffeine affect the body?", "What should I do if I have a cold?", "Why is sunscreen important?",
    # food and cooking
    "How do I boil an egg?", "How do I make a simple salad dressing?", "What is the best way to cook rice?",
    "How do I keep bread fresh?", "What can I cook with potatoes?", "How do I make pancakes?",
    "Why does bread rise?", "How do I store fresh herbs?", "What is the difference between baking soda and baking powder?",
    "How do I make a cup of tea?", "How do I sharpen a kitchen knife?", "What spices go well with chicken?",
    "How can I make vegetables taste better?", "How do I make soup from leftovers?", "Why do onions make you cry?",
    # money
    "How do I make a monthly budget?", "What is compound interest?", "How can I save money on groceries?",
    "What is a credit score?", "Should I pay off debt or save first?", "What is inflation?",
    "How does a savings account work?", "What is a stock?", "How can I avoid impulse buying?",
    "What is an emergency fund?", "How do taxes work?", "What is the difference between a debit card and a credit card?",
    # travel and places
    "What should I pack for a weekend trip?", "How can I beat jet lag?", "What is the capital of Japan?",
    "Why is Paris famous?", "How do I plan a road trip?", "What should I know before traveling abroad?",
    "How do airplanes stay in the air?", "What is the longest river in the world?", "Why do people visit the Grand Canyon?",
    "How can I travel cheaply?", "What is a passport for?", "How do I find my way in a new city?",
    # work and study
    "How do I write a good resume?", "How can I focus better while studying?", "How do I prepare for a job interview?",
    "What is a good way to take notes?", "How can I manage my time better?", "How do I write a polite email?",
    "How can I speak confidently in public?", "What makes a good team leader?", "How do I ask for a raise?",
    "How can I learn a new skill quickly?", "How do I deal with a difficult coworker?", "What is procrastination?",
    "How do I give useful feedback?", "How can I stay motivated?", "How do I set goals I can keep?",
    # technology
    "What is the internet?", "How does Wi-Fi work?", "What is a computer virus?", "How do I make a strong password?",
    "What is cloud storage?", "How does a search engine work?", "What is artificial intelligence?",
    "How do I back up my phone?", "What is a programming language?", "How does GPS know where I am?",
    "What is a spreadsheet used for?", "How do I speed up a slow computer?", "What is encryption?",
    "How does a touch screen work?", "What is an operating system?",
    # history and society
    "Who built the pyramids?", "What was the Industrial Revolution?", "Why did the Roman Empire fall?",
    "What is democracy?", "Who invented the printing press?", "What was the Renaissance?",
    "Why do countries have flags?", "What is the United Nations?", "How did writing begin?",
    "What was the Silk Road?", "Why do we celebrate new year?", "What is a constitution?",
    # nature and animals
    "Why do cats purr?", "How do fish breathe underwater?", "Why do dogs wag their tails?",
    "How do trees grow?", "What do whales eat?", "Why are some animals nocturnal?",
    "How do butterflies develop?", "Why do birds migrate?", "What is a rainforest?", "How do ants work together?",
    "Why are bees important?", "How do snakes move without legs?",
    # language and culture
    "What is a haiku?", "How can I improve my vocabulary?", "What is the difference between a noun and a verb?",
    "Why do people tell stories?", "How can I learn a new language?", "What is a metaphor?",
    "Why is music important to people?", "What makes a good book?", "How do I write a short poem?",
    "What is the origin of the alphabet?",
    # home and everyday life
    "How do I remove a coffee stain?", "How can I keep my houseplants alive?", "How do I fix a leaky faucet?",
    "How can I make my home more energy efficient?", "How do I organize a small closet?", "What is composting?",
    "How do I clean a cast iron pan?", "How can I get rid of fruit flies?", "How often should I water a cactus?",
    "How do I choose a good mattress?", "How can I make my mornings less rushed?", "How do I start a vegetable garden?",
    "How do I change a light bulb safely?", "How can I reduce waste at home?", "How do I wash a wool sweater?",
    "How do I train a puppy to sit?", "How can I be a better listener?", "How do I make new friends as an adult?",
]

HELD_OUT = [
    "Why do we yawn?", "How does a refrigerator keep food cold?", "What is a volcano?",
    "How do I make a good cup of coffee?", "What is the stock market?", "How can I drink more water each day?",
    "How does a rocket reach space?", "What should I do before a long hike?", "Why do onions have layers?",
    "How do I write a thank-you note?", "What is a solar panel?", "Why do we dream?",
    "How can I keep my kitchen clean?", "What is the speed of light?", "How do I prepare for an exam?",
    "Why do some people snore?", "What is a healthy snack?", "How do trains stay on the tracks?",
    "What is recycling?", "How can I learn to cook?", "Why do penguins live in cold places?",
    "What is a microwave oven?", "How do I plan a birthday party?", "What is the difference between weather and climate?",
]

DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE inventory;
DROP TABLE products;
